"""Generate the reference city's configuration: config/esup.yaml, departments.yaml,
catalog.yaml and calendar.yaml.

    python scripts/make_reference_city.py [--out DIR]

The reference city (江临市, a fictional coastal prefecture-level city) follows the
programme esup is modelled on: 94 departments evaluated in three categories, 43
of them under electronic supervision with 170 approval items (181 sub-items),
plus the 12345 hotline's petition categories and leader-instruction items.

The output is deterministic (fixed seed, fixed order): running the script again
reproduces the shipped files byte for byte, which a test checks. The files were
generated once and may be edited by hand; after editing them, do not rerun the
script over them unless the tables here are changed to match.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

SEED = 20240601
CITY = "江临市"
MAIL = "jianglin.example"  # a reserved domain: contacts are placeholders to replace

GOV, PARTY, STATIONED = "government", "party_mass", "stationed"

# (code, name, category, supervised). Supervised: the government departments that run
# approval work, the 12345 hotline office, the government supervision office, and the
# stationed units whose approvals are handled in the city's government service centre.
DEPARTMENTS: tuple[tuple[str, str, str, bool], ...] = (
    ("fgw", "市发展和改革委员会", GOV, True),
    ("jyj", "市教育局", GOV, True),
    ("kjj", "市科学技术局", GOV, True),
    ("gxj", "市工业和信息化局", GOV, True),
    ("mzw", "市民族宗教事务委员会", GOV, True),
    ("gaj", "市公安局", GOV, True),
    ("mzj", "市民政局", GOV, True),
    ("sfj", "市司法局", GOV, True),
    ("czj", "市财政局", GOV, True),
    ("rsj", "市人力资源和社会保障局", GOV, True),
    ("zrzy", "市自然资源和规划局", GOV, True),
    ("sthj", "市生态环境局", GOV, True),
    ("zjj", "市住房和城乡建设局", GOV, True),
    ("jtj", "市交通运输局", GOV, True),
    ("slj", "市水利局", GOV, True),
    ("nyj", "市农业农村局", GOV, True),
    ("swj", "市商务局", GOV, True),
    ("wlj", "市文化广电旅游局", GOV, True),
    ("wjw", "市卫生健康委员会", GOV, True),
    ("yjj", "市应急管理局", GOV, True),
    ("scjg", "市市场监督管理局", GOV, True),
    ("tyj", "市体育局", GOV, True),
    ("ybj", "市医疗保障局", GOV, True),
    ("lyj", "市林业局", GOV, True),
    ("cgj", "市城市管理局", GOV, True),
    ("gfdy", "市国防动员办公室", GOV, True),
    ("wsb", "市人民政府外事办公室", GOV, True),
    ("jrj", "市地方金融管理局", GOV, True),
    ("yllh", "市园林绿化局", GOV, True),
    ("fgj", "市住房保障和房产管理局", GOV, True),
    ("wwj", "市文物局", GOV, True),
    ("xmsy", "市畜牧兽医局", GOV, True),
    ("hyy", "市海洋与渔业局", GOV, True),
    ("ghj", "市港口和航运管理局", GOV, True),
    ("glj", "市公路管理局", GOV, True),
    ("rx12345", "市12345政务服务便民热线办公室", GOV, True),
    ("dcs", "市人民政府督查室", GOV, True),
    ("szfb", "市人民政府办公室", GOV, False),
    ("sjj", "市审计局", GOV, False),
    ("gzw", "市人民政府国有资产监督管理委员会", GOV, False),
    ("tjj", "市统计局", GOV, False),
    ("xfj", "市信访局", GOV, False),
    ("tyjr", "市退役军人事务局", GOV, False),
    ("jgsw", "市机关事务管理局", GOV, False),
    ("lsj", "市粮食和物资储备局", GOV, False),
    ("zwfw", "市政务服务和数据管理局", GOV, False),
    ("tzcj", "市投资促进局", GOV, False),
    ("xczx", "市乡村振兴局", GOV, False),
    ("jw", "市纪委监委机关", PARTY, False),
    ("swbgs", "市委办公室", PARTY, False),
    ("zzb", "市委组织部", PARTY, False),
    ("xcb", "市委宣传部", PARTY, False),
    ("tzb", "市委统战部", PARTY, False),
    ("zfw", "市委政法委员会", PARTY, False),
    ("zys", "市委政策研究室", PARTY, False),
    ("wxb", "市委网络安全和信息化委员会办公室", PARTY, False),
    ("bb", "市委机构编制委员会办公室", PARTY, False),
    ("jggw", "市直机关工作委员会", PARTY, False),
    ("lgbj", "市委老干部局", PARTY, False),
    ("dx", "市委党校", PARTY, False),
    ("dsyj", "市委党史研究室", PARTY, False),
    ("dag", "市档案馆", PARTY, False),
    ("rdbgt", "市人大常委会办公厅", PARTY, False),
    ("zxbgt", "市政协办公厅", PARTY, False),
    ("zgh", "市总工会", PARTY, False),
    ("tsw", "共青团市委", PARTY, False),
    ("fl", "市妇女联合会", PARTY, False),
    ("kx", "市科学技术协会", PARTY, False),
    ("wl", "市文学艺术界联合会", PARTY, False),
    ("ql", "市归国华侨联合会", PARTY, False),
    ("cl", "市残疾人联合会", PARTY, False),
    ("gsl", "市工商业联合会", PARTY, False),
    ("hsz", "市红十字会", PARTY, False),
    ("skl", "市社会科学界联合会", PARTY, False),
    ("sw", "国家税务总局江临市税务局", STATIONED, True),
    ("qxj", "江临市气象局", STATIONED, True),
    ("yc", "江临市烟草专卖局", STATIONED, True),
    ("yzgl", "江临市邮政管理局", STATIONED, True),
    ("xfzd", "江临市消防救援支队", STATIONED, True),
    ("wxd", "江临市无线电管理局", STATIONED, True),
    ("dcd", "国家统计局江临调查队", STATIONED, False),
    ("rmyh", "中国人民银行江临市分行", STATIONED, False),
    ("jrjg", "国家金融监督管理总局江临监管分局", STATIONED, False),
    ("hg", "江临海关", STATIONED, False),
    ("hsj", "江临海事局", STATIONED, False),
    ("dzj", "江临市地震局", STATIONED, False),
    ("gd", "国网江临供电公司", STATIONED, False),
    ("yw", "江临市盐务局", STATIONED, False),
    ("txb", "江临市通信发展管理办公室", STATIONED, False),
    ("bjz", "江临出入境边防检查站", STATIONED, False),
    ("swzy", "省水文水资源勘测中心江临分中心", STATIONED, False),
    ("yzfgs", "中国邮政集团有限公司江临市分公司", STATIONED, False),
    ("dzd", "省地质矿产勘查开发局江临地质大队", STATIONED, False),
    ("dxfgs", "中国电信江临分公司", STATIONED, False),
)

# Common sub-item sets (办理项).
XBYZ = ("新办", "变更", "延续", "注销")
XBY = ("新办", "变更", "延续")
XB = ("新办", "变更")
SBZ = ("设立", "变更", "注销")

# department -> approval items: (name, legal days, sub-items). A sub-item is a name,
# or (name, legal days) where its legal limit differs from the item's.
Sub = str | tuple[str, int]
APPROVALS: dict[str, tuple[tuple[str, int, tuple[Sub, ...]], ...]] = {
    "fgw": (
        ("企业投资项目核准", 20, ("核准", "变更")),
        ("固定资产投资项目节能审查", 20, ()),
        ("政府投资项目可行性研究报告审批", 20, ()),
        ("政府投资项目初步设计审批", 20, ()),
        ("企业境外投资项目核准", 20, ()),
        ("依法必须招标项目的招标范围、招标方式、招标组织形式核准", 20, ()),
    ),
    "jyj": (
        ("民办学校设立审批", 60, ("筹设", "正式设立", "分立、合并", "终止")),
        ("教师资格认定", 20, ("高级中学", "中等职业学校", "中等职业学校实习指导")),
        ("校车使用许可", 20, ()),
    ),
    "kjj": (("外国人来华工作许可", 20, ("新办", "延期", "变更", "注销")),),
    "gxj": (
        ("电力设施保护区内施工作业审批", 20, ()),
        ("在电力设施周围进行爆破作业审批", 20, ()),
    ),
    "mzw": (
        ("宗教活动场所设立审批", 30, ("筹备设立", "正式登记")),
        ("宗教活动场所扩建、异地重建审批", 20, ()),
        ("宗教临时活动地点审批", 20, ()),
        ("宗教团体、宗教院校、宗教活动场所接受境外捐赠审批", 20, ()),
    ),
    "gaj": (
        ("户口迁移审批", 0, ()),
        ("往来港澳通行证再次签注", 0, ()),
        ("普通护照签发", 15, ()),
        ("大型群众性活动安全许可", 7, ()),
        ("剧毒化学品购买许可证核发", 10, ()),
        ("民用爆炸物品购买许可", 10, ()),
        ("民用爆炸物品运输许可", 10, ()),
        ("焰火晚会烟花爆竹燃放许可", 20, ()),
        ("公章刻制业特种行业许可证核发", 20, ()),
        ("旅馆业特种行业许可证核发", 20, ()),
        ("机动车驾驶证核发", 20, ()),
        ("机动车登记", 20, ()),
    ),
    "mzj": (
        ("社会团体登记", 60, ("成立登记", "变更登记", "注销登记")),
        ("民办非企业单位登记", 60, ()),
        ("慈善组织公开募捐资格审定", 20, ()),
        ("内地居民涉外婚姻登记", 0, ()),
        ("地名命名、更名审批", 20, ()),
    ),
    "sfj": (
        ("基层法律服务工作者执业核准", 20, ()),
        ("律师事务所设立许可（初审）", 20, SBZ),
        ("律师执业许可（初审）", 20, ()),
    ),
    "czj": (("代理记账机构执业审批", 10, XB),),
    "rsj": (
        ("人力资源服务许可", 20, XBYZ),
        ("劳务派遣经营许可", 20, ()),
        ("民办职业培训学校设立审批", 30, ()),
        ("企业实行不定时工作制和综合计算工时工作制审批", 20, ()),
    ),
    "zrzy": (
        ("建设用地规划许可证核发", 20, XBY),
        ("建设工程规划许可证核发", 20, XBY),
        ("乡村建设规划许可证核发", 20, ()),
        ("建设项目用地预审与选址意见书核发", 20, ()),
        ("临时用地审批", 20, ()),
        ("建设工程设计方案审查", 20, ()),
        ("采矿权登记", 45, ()),
        ("法人或者其他组织需要利用属于国家秘密的基础测绘成果审批", 20, ()),
    ),
    "sthj": (
        ("建设项目环境影响评价文件审批", 60, (("报告书", 60), ("报告表", 30))),
        ("排污许可证核发", 30, XBYZ),
        ("危险废物收集经营许可证核发", 20, ()),
        ("辐射安全许可证核发", 20, ()),
        ("江河、湖泊新建、改建或者扩大排污口审核", 20, ()),
    ),
    "zjj": (
        ("建筑工程施工许可证核发", 7, ("新办", "变更", "延期")),
        ("建筑业企业资质核准", 20, ("首次申请", "增项", "升级", "延续", "变更")),
        ("房地产开发企业资质核定", 20, ()),
        ("建设工程消防设计审查", 15, ()),
        ("建设工程消防验收", 15, ()),
        ("燃气经营许可证核发", 20, ()),
        ("城镇污水排入排水管网许可证核发", 15, XBY),
        ("超限高层建筑工程抗震设防审批", 20, ()),
    ),
    "jtj": (
        ("道路旅客运输经营许可", 20, XBYZ),
        ("道路货物运输经营许可", 20, ()),
        ("出租汽车经营许可", 20, ()),
        ("网络预约出租汽车经营许可", 20, ()),
        ("网络预约出租汽车运输证核发", 10, ()),
        ("出租汽车驾驶员从业资格证核发", 20, ("初次申领", "补证", "注销")),
        ("公路建设项目施工许可", 20, ()),
        ("国内水路运输经营许可", 20, ()),
    ),
    "slj": (
        ("取水许可", 45, XBY),
        ("水工程建设规划同意书审核", 20, ()),
        ("河道管理范围内建设项目工程建设方案审批", 20, ()),
        ("生产建设项目水土保持方案审批", 20, (("报告书", 20), ("报告表", 10))),
        ("洪水影响评价类审批", 20, ()),
        ("河道采砂许可", 20, ()),
    ),
    "nyj": (
        ("农药经营许可", 20, XBYZ),
        ("农作物种子生产经营许可证核发", 20, XBYZ),
        ("拖拉机和联合收割机登记", 20, ()),
        ("拖拉机和联合收割机驾驶证核发", 20, ()),
        ("农业植物检疫证书核发", 20, ()),
    ),
    "swj": (
        ("成品油零售经营资格审批", 20, XBYZ),
        ("报废机动车回收企业资质认定", 20, ()),
        ("对外劳务合作经营资格核准", 20, ()),
    ),
    "wlj": (
        ("营业性演出审批", 10, ()),
        ("娱乐场所经营许可", 20, XBYZ),
        ("互联网上网服务营业场所经营许可", 20, ()),
        ("旅行社业务经营许可", 20, SBZ),
        ("广播电视节目制作经营许可", 20, ()),
        ("卫星电视广播地面接收设施安装许可", 20, ()),
        ("出版物零售单位设立审批", 20, XB),
    ),
    "wjw": (
        ("医疗机构执业登记", 45, ("执业登记", "变更登记", "校验", "注销登记")),
        ("医疗机构设置审批", 20, ()),
        ("医师执业注册", 20, ("首次注册", "变更注册", "注销注册")),
        ("护士执业注册", 20, ()),
        ("母婴保健技术服务执业许可", 20, ()),
        ("放射诊疗许可", 20, ("新办", "变更", "校验")),
        ("公共场所卫生许可", 20, XBYZ),
        ("饮用水供水单位卫生许可", 20, ()),
    ),
    "yjj": (
        ("危险化学品经营许可证核发", 30, XBYZ),
        ("危险化学品建设项目安全条件审查", 45, ()),
        ("危险化学品建设项目安全设施设计审查", 20, ()),
        ("烟花爆竹经营（批发）许可证核发", 30, ()),
        ("金属冶炼建设项目安全设施设计审查", 20, ()),
        ("烟花爆竹经营（零售）许可证核发", 20, ()),
    ),
    "scjg": (
        ("个体工商户登记", 0, ()),
        ("食品经营许可", 10, XBYZ),
        ("食品生产许可", 20, XBYZ),
        ("药品零售企业许可", 30, ("筹建", "验收", "变更", "换证")),
        ("第二类精神药品零售业务审批", 20, ()),
        ("第三类医疗器械经营许可", 30, ()),
        ("特种设备使用登记", 15, ("新办", "变更", "注销")),
        ("特种设备作业人员资格认定", 20, ("取证", "复审")),
        ("计量标准器具核准", 20, ("新建", "复查")),
        ("食品生产加工小作坊登记", 15, ()),
        ("移动式压力容器充装许可", 20, ()),
    ),
    "tyj": (("经营高危险性体育项目许可", 30, XBY),),
    "ybj": (("基本医疗保险定点医药机构确定", 20, ("定点医疗机构", "定点零售药店")),),
    "lyj": (
        ("林木采伐许可证核发", 20, ()),
        ("使用林地审核审批", 20, ("永久使用林地", "临时使用林地")),
        ("林草种子生产经营许可证核发", 20, ()),
        ("野生动物人工繁育许可证核发", 20, ()),
        ("森林草原防火期内在森林草原防火区野外用火审批", 10, ()),
    ),
    "cgj": (
        ("城市建筑垃圾处置核准", 20, XBY),
        ("设置大型户外广告审批", 20, ()),
        ("挖掘城市道路审批", 20, ()),
        ("占用城市道路审批", 20, ()),
        ("依附于城市道路建设各种管线、杆线等设施审批", 20, ()),
        ("城市桥梁上架设各类市政管线审批", 20, ()),
        ("从事城市生活垃圾经营性清扫、收集、运输、处理服务审批", 20, ()),
        ("关闭、闲置、拆除城市环卫设施许可", 20, ()),
    ),
    "gfdy": (
        ("应建防空地下室的民用建筑项目报建审批", 20, ("结合建设", "易地建设")),
        ("拆除人民防空工程审批", 20, ()),
    ),
    "wsb": (("邀请外国人来华审批", 10, ()),),
    "jrj": (("融资担保公司设立审批", 30, SBZ),),
    "yllh": (
        ("临时占用城市绿化用地审批", 20, ()),
        ("砍伐、迁移城市树木审批", 20, ("砍伐", "迁移")),
        ("改变绿化规划、绿化用地使用性质审批", 20, ()),
    ),
    "fgj": (("商品房预售许可", 10, XB),),
    "wwj": (
        ("文物保护单位保护范围内其他建设工程或者爆破、钻探、挖掘等作业审批", 20, ()),
        ("文物保护单位建设控制地带内建设工程设计方案审批", 20, ()),
        ("市级文物保护单位修缮审批", 20, ()),
        ("非国有文物收藏单位和其他单位借用国有馆藏文物审批", 20, ()),
    ),
    "xmsy": (
        ("兽药经营许可证核发", 20, XBYZ),
        ("动物防疫条件合格证核发", 20, XBY),
        ("动物诊疗许可证核发", 20, XBYZ),
        ("种畜禽生产经营许可", 20, XBYZ),
    ),
    "hyy": (
        ("渔业捕捞许可", 20, ("新办", "换发", "注销")),
        ("水域滩涂养殖证核发", 20, ()),
        ("海域使用权审核", 30, ()),
        ("水产苗种生产经营许可", 20, XBY),
    ),
    "ghj": (
        ("港口经营许可", 30, XBY),
        ("港口岸线使用审批", 20, ()),
        ("危险货物港口作业认可", 20, ()),
    ),
    "glj": (
        ("公路超限运输许可", 15, ()),
        ("涉路施工许可", 20, ()),
        ("公路建筑控制区内埋设管线、电缆等设施许可", 20, ()),
        ("设置非公路标志审批", 20, ()),
        ("更新采伐护路林审批", 20, ()),
    ),
    "sw": (
        ("增值税专用发票（增值税税控系统）最高开票限额审批", 20, ("十万元", "百万元", "千万元")),
        ("对纳税人延期缴纳税款的核准", 20, ()),
        ("对纳税人延期申报的核准", 20, ()),
    ),
    "qxj": (
        ("防雷装置设计审核", 20, ()),
        ("防雷装置竣工验收", 20, ()),
        ("升放无人驾驶自由气球或者系留气球活动审批", 10, ()),
    ),
    "yc": (("烟草专卖零售许可证核发", 20, ("新办", "变更", "延续", "停业", "歇业")),),
    "yzgl": (("快递业务经营许可", 20, XBYZ),),
    "xfzd": (("公众聚集场所投入使用、营业前消防安全检查", 10, ("告知承诺方式", "检查方式")),),
    "wxd": (
        ("设置、使用无线电台（站）审批", 20, XBYZ),
        ("无线电频率使用许可", 20, ()),
    ),
}

# Promised limits drawn for each legal limit; a legal limit of 0 is an immediate item (即办件).
PROMISED = {0: (0,), 7: (3, 5), 10: (3, 5, 7), 15: (5, 7, 10), 20: (5, 7, 10, 12, 15),
            30: (10, 15, 20), 45: (15, 20, 30), 60: (20, 30, 40)}  # fmt: skip

# The 12345 hotline's petition categories and the leader-instruction items: any department
# may handle such a case, so they name none. (code, name, kind, promised, legal, warn_days)
SHARED: tuple[tuple[str, str, str, int, int, int | None], ...] = (
    ("rx-zx", "12345热线诉求：咨询", "petition", 3, 3, 1),
    ("rx-qz", "12345热线诉求：求助", "petition", 5, 5, None),
    ("rx-ts", "12345热线诉求：投诉", "petition", 10, 10, None),
    ("rx-jb", "12345热线诉求：举报", "petition", 15, 15, None),
    ("rx-jy", "12345热线诉求：意见建议", "petition", 15, 15, None),
    ("ps-yb", "市领导批示件（一般）", "instruction", 5, 10, None),
    ("ps-jj", "市领导批示件（紧急）", "instruction", 2, 3, 1),
)

EXPECTED = {"departments": 94, "supervised": 43, "approval items": 170, "sub-items": 181}
SHORTER = ("注销", "注销登记", "补证", "停业", "歇业")  # sub-items promised in at most 3 days

HEADER = """\
# {what} of the reference city, {city}.
# Generated by scripts/make_reference_city.py; may be edited by hand.
# docs/configuration.md describes every key.
"""

SETTINGS = """\
city: {city}
# IANA time zone in which case dates are counted.
timezone: Asia/Shanghai
# Warning (预警) when an open case has this many working days or fewer left before its
# promised due date, for items that set no warn_days of their own.
warn_days: 2
# Warning this many working days before a special procedure's requested days end.
procedure_warn_days: 2
"""

CALENDAR = """\
#
# Working days are Monday to Friday, minus public holidays, plus make-up working
# days (调休). The chinese-calendar package supplies each year through 2026. A year
# listed under `years` replaces the package's data for that year; add next year here
# as soon as the State Council publishes its notice (usually in the autumn).
years: {}

# EXAMPLE ONLY, not real dates: to add a year, replace the line `years: {}` above with
# a block of this shape, holding the dates the notice publishes:
# years:
#   2027:
#     source: 国务院办公厅关于2027年部分节假日安排的通知
#     holidays:         # days off (放假), every one of them, weekends included
#       - 2027-01-01    # 元旦
#       - 2027-02-06    # 春节 (first day of the break)
#       - 2027-02-07
#     workdays:         # make-up working days (调休上班), usually a Saturday or Sunday
#       - 2027-02-14

# Single-date overrides for any year, applied last, e.g. a city-wide day off:
# holidays:
#   - 2026-07-15
holidays: []
workdays: []

# The years the working-day calendar precomputes (both inclusive).
window:
  first_year: 2000
  last_year: 2099
"""


def sub_item(code: str, k: int, parent: str, sub: Sub, promised: int, rng: random.Random) -> Any:
    """One sub-item; most inherit every limit, a few set a shorter promise or their own law."""
    label, legal = (sub, None) if isinstance(sub, str) else sub
    entry: dict[str, Any] = {"code": f"{code}-{k:02d}", "name": f"{parent}（{label}）"}
    if legal is not None:
        entry["promised_days"] = rng.choice(PROMISED[legal])
        entry["legal_days"] = legal
    elif label in SHORTER and promised > 3:
        entry["promised_days"] = 3
    elif label.startswith("变更") and promised >= 10:
        entry["promised_days"] = promised // 2
    return entry


def approval_items(rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    """The approval items by department, with codes like fgw-001 and fgw-001-01."""
    out: dict[str, list[dict[str, Any]]] = {}
    for dept, specs in APPROVALS.items():
        entries = out.setdefault(dept, [])
        for n, (name, legal, subs) in enumerate(specs, 1):
            code, promised = f"{dept}-{n:03d}", rng.choice(PROMISED[legal])
            item: dict[str, Any] = {"code": code, "name": name, "department": dept}
            item |= {"kind": "approval", "promised_days": promised, "legal_days": legal}
            if promised and rng.random() < 0.2:
                item["warn_days"] = rng.choice((1, 2, 3)) if promised >= 5 else 1
            if subs:
                item["sub_items"] = [
                    sub_item(code, k, name, sub, promised, rng) for k, sub in enumerate(subs, 1)
                ]
            entries.append(item)
    return out


def dump(rows: list[dict[str, Any]]) -> str:
    return yaml.safe_dump(rows, allow_unicode=True, sort_keys=False, width=400)


def render(seed: int = SEED) -> dict[str, str]:
    """The four files' text by file name."""
    rng = random.Random(seed)
    names = {code: name for code, name, _, _ in DEPARTMENTS}
    files = {"esup.yaml": HEADER.format(what="Settings", city=CITY) + SETTINGS.format(city=CITY)}

    text = HEADER.format(what="Departments", city=CITY) + "departments:\n"
    titles = {GOV: "政府部门", PARTY: "党群部门", STATIONED: "驻市单位"}
    for category, title in titles.items():
        rows = []
        for code, name, cat, supervised in DEPARTMENTS:
            if cat == category:
                row: dict[str, Any] = {"code": code, "name": name, "category": cat}
                row["supervised"] = supervised
                if supervised:
                    row["contact"] = f"{code}@{MAIL}"
                rows.append(row)
        text += f"\n# {title} ({category}): {len(rows)}\n" + dump(rows)
    files["departments.yaml"] = text

    text = HEADER.format(what="Catalog (事项目录)", city=CITY) + "items:\n"
    for dept, items in approval_items(rng).items():
        text += f"\n# {names[dept]} ({dept})\n" + dump(items)
    shared = [
        {"code": code, "name": name, "department": None, "kind": kind}
        | {"promised_days": promised, "legal_days": legal}
        | ({} if warn is None else {"warn_days": warn})
        for code, name, kind, promised, legal, warn in SHARED
    ]
    text += "\n# 12345热线诉求类别 and 市领导批示件: any department may handle them.\n"
    files["catalog.yaml"] = text + dump(shared)

    files["calendar.yaml"] = HEADER.format(what="Working-day calendar", city=CITY) + CALENDAR
    return files


def check_tables() -> None:
    """Stop when the tables no longer give the reference city's published figures."""
    items = [spec for specs in APPROVALS.values() for spec in specs]
    supervised = {code for code, _, _, s in DEPARTMENTS if s}
    found = {
        "departments": len(DEPARTMENTS),
        "supervised": len(supervised),
        "approval items": len(items),
        "sub-items": sum(len(subs) for _, _, subs in items),
    }
    if found != EXPECTED or not set(APPROVALS) <= supervised:
        sys.exit(f"tables give {found}, expected {EXPECTED} (items only in supervised ones)")
    counts = Counter(cat for _, _, cat, _ in DEPARTMENTS)
    print(f"{CITY}: {dict(counts)}, {found}")


def write(out: Path, files: dict[str, str]) -> None:
    """Write each file through a temporary file and a rename, so none is left half-written."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
            os.replace(tmp, out / name)
        except BaseException:
            os.unlink(tmp)
            raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the reference city's configuration.")
    default = Path(__file__).resolve().parent.parent / "config"
    parser.add_argument("--out", type=Path, default=default, help="directory (default: config/)")
    parser.add_argument("--seed", type=int, default=SEED, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    check_tables()
    write(args.out, render(args.seed))
    print(f"wrote esup.yaml, departments.yaml, catalog.yaml, calendar.yaml to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
